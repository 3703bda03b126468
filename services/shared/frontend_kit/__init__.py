"""The frontend kit: what the factory line puts into a Next.js tree besides the pages,
and the file handling the three engines of the line share (no engine owns it).

- ``library/``: the component library (real TSX, React 19, no UI kit), the API client
  ``@/lib/api-client``, the sidebar, and the minimal Next.js App Router app an empty
  frontend root is bootstrapped as. The registry the gateway lists
  (``contracts.factory.catalog.COMPONENTS``) is checked against these sources by
  tests/factory/test_kit.py with the real TypeScript compiler.
- ``install``: copies the kit into a tree as files the factory owns (like shadcn/ui's
  CLI), version-stamped, upgraded when the kit changes, never over a file edited by
  hand. The factory runs it on its first deploy; ``aoc factory init`` runs it too.
- ``owned``: writing files the factory owns, confined to the root, atomically, with the
  ownership manifest that tells the factory's files from a human's.
- ``files``: the identity of a tree (sha256 of every file) for releases and scans.
"""
