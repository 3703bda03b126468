"""POST /api/v1/ask: natural-language questions about the control plane (behind
AOC_AI_FEATURES_ENABLED). ``intents`` answers from the read models without a model;
``llm`` optionally rewords that answer; ``cache`` keeps answers in NATS KV for an hour."""
