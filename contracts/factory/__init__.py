"""The factory line's contract: page requirements, their validation, the events of the
three engines that turn them into deployed pages, and the subjects they meet on.

Who writes what
- The gateway (HTTP) and anyone on NATS put a ``RequirementSubmission`` on
  ``aoc.in.factory.requirements`` (the work-queue stream ``AOC_FACTORY_INPUT``). The
  gateway validates first and answers 422 per field; the factory validates again,
  because a raw NATS publish skips the gateway.
- Only the factory engine writes ``aoc.evt.frontend-factory.requirement_*``: it is the
  single writer of requirement state. The gateway's views, the integrity scan and the
  factory itself fold the same events with the same reducer (``ledger``).
- Operations that need the factory's decision (generate, deploy, cancel, preview) are
  core NATS request/reply on ``aoc.factory.<verb>``, answered within 2 s.
- The integrity engine flags the deploy engine with ``deploy_flagged``; the deploy engine
  records each release as ``release_deployed`` / ``release_rolled_back`` /
  ``deploy_failed``.

The modules, none of which does I/O (beyond the idempotent ``ensure_factory_streams``):

| module | what |
|---|---|
| ``subjects`` | slugs, the input work queue, request subjects, headers |
| ``tree`` | the layout of the frontend tree, the tree digest |
| ``settings`` | ``FactorySettings`` (the line's environment) |
| ``requirement`` | page types and their rules, limits, ``RequirementSubmission`` |
| ``validation`` | ``validate_submission`` (every error at once, FastAPI's 422 shape) |
| ``schema`` | the JSON Schema of a submission |
| ``icons`` | the lucide-react icon names a page may use |
| ``events`` | requirement, flag and release events |
| ``requests`` | the factory's replies, the gateway's route inventory |
| ``ledger`` | the requirement ledger: the one reducer every reader folds the events with |
| ``catalog`` | the six templates and the component registry the frontend kit implements |

The names below are re-exported so ``from contracts.factory import X`` keeps working.
"""

from contracts.factory.events import (
    DEPLOY_EVENTS,
    REQUIREMENT_EVENTS,
    CommandRun,
    DeployFailed,
    DeployFlagged,
    DeployRecord,
    FrontendKitInstalled,
    ReleaseDeployed,
    ReleaseRolledBack,
    RequirementCancelled,
    RequirementDeployed,
    RequirementFailed,
    RequirementGenerated,
    RequirementGenerating,
    RequirementRejected,
    RequirementSubmitted,
)
from contracts.factory.icons import LUCIDE_ICONS, LUCIDE_VERSION
from contracts.factory.requests import (
    HTTP_STATUS,
    FactoryReply,
    FactoryRequest,
    GatewayRoute,
    GatewayRoutes,
    RouteField,
    encode,
    reply_decoder,
    request_decoder,
    routes_decoder,
    submission_decoder,
)
from contracts.factory.requirement import (
    FEATURES,
    FIELD_TYPES,
    FILTERABLE_TYPES,
    HTTP_METHODS,
    LIMITS,
    NUMERIC_TYPES,
    PAGE_RULES,
    PAGE_TYPES,
    PRIORITIES,
    SEARCHABLE_TYPES,
    STATUSES,
    SUBMISSION_KEYS,
    WRITE_METHODS,
    ApiEndpoint,
    DataField,
    PageRules,
    RequirementSubmission,
)
from contracts.factory.schema import submission_schema
from contracts.factory.settings import FactorySettings
from contracts.factory.subjects import (
    ACTOR_HEADER,
    CORRELATION_HEADER,
    DEPLOY,
    DEPLOY_CONSUMER,
    FACTORY,
    GATEWAY_ROUTES,
    INPUT_STREAM,
    INPUT_SUBJECTS,
    INTAKE_CONSUMER,
    INTEGRITY,
    ORIGIN_HEADER,
    REQUEST_PREFIX,
    REQUEST_VERBS,
    REQUIREMENT_ID,
    REQUIREMENT_ID_HEADER,
    SUBMIT_SUBJECT,
    ensure_factory_streams,
    input_stream,
    request_subject,
)
from contracts.factory.tree import (
    APP_DIR,
    EXCLUDED_DIRS,
    OWNERSHIP_MANIFEST,
    SIDEBAR_ICONS,
    SIDEBAR_REGISTRY,
    page_file,
    tree_digest,
)
from contracts.factory.validation import (
    API_SEGMENT,
    ICON,
    IDENTIFIER,
    PATH_PARAM,
    RESERVED_IDENTIFIERS,
    RESERVED_ROUTES,
    SECTION,
    SLUG_SEGMENT,
    FieldError,
    Validation,
    endpoint_problem,
    is_identifier,
    route_problem,
    validate_submission,
)

__all__ = [
    "ACTOR_HEADER",
    "API_SEGMENT",
    "APP_DIR",
    "CORRELATION_HEADER",
    "DEPLOY",
    "DEPLOY_CONSUMER",
    "DEPLOY_EVENTS",
    "EXCLUDED_DIRS",
    "FACTORY",
    "FEATURES",
    "FIELD_TYPES",
    "FILTERABLE_TYPES",
    "GATEWAY_ROUTES",
    "HTTP_METHODS",
    "HTTP_STATUS",
    "ICON",
    "IDENTIFIER",
    "INPUT_STREAM",
    "INPUT_SUBJECTS",
    "INTAKE_CONSUMER",
    "INTEGRITY",
    "LIMITS",
    "LUCIDE_ICONS",
    "LUCIDE_VERSION",
    "NUMERIC_TYPES",
    "ORIGIN_HEADER",
    "OWNERSHIP_MANIFEST",
    "PAGE_RULES",
    "PAGE_TYPES",
    "PATH_PARAM",
    "PRIORITIES",
    "REQUEST_PREFIX",
    "REQUEST_VERBS",
    "REQUIREMENT_EVENTS",
    "REQUIREMENT_ID",
    "REQUIREMENT_ID_HEADER",
    "RESERVED_IDENTIFIERS",
    "RESERVED_ROUTES",
    "SEARCHABLE_TYPES",
    "SECTION",
    "SIDEBAR_ICONS",
    "SIDEBAR_REGISTRY",
    "SLUG_SEGMENT",
    "STATUSES",
    "SUBMISSION_KEYS",
    "SUBMIT_SUBJECT",
    "WRITE_METHODS",
    "ApiEndpoint",
    "CommandRun",
    "DataField",
    "DeployFailed",
    "DeployFlagged",
    "DeployRecord",
    "FactoryReply",
    "FactoryRequest",
    "FactorySettings",
    "FieldError",
    "FrontendKitInstalled",
    "GatewayRoute",
    "GatewayRoutes",
    "PageRules",
    "ReleaseDeployed",
    "ReleaseRolledBack",
    "RequirementCancelled",
    "RequirementDeployed",
    "RequirementFailed",
    "RequirementGenerated",
    "RequirementGenerating",
    "RequirementRejected",
    "RequirementSubmission",
    "RequirementSubmitted",
    "RouteField",
    "Validation",
    "encode",
    "endpoint_problem",
    "ensure_factory_streams",
    "input_stream",
    "is_identifier",
    "page_file",
    "reply_decoder",
    "request_decoder",
    "request_subject",
    "route_problem",
    "routes_decoder",
    "submission_decoder",
    "submission_schema",
    "tree_digest",
    "validate_submission",
]
