"""The bottom layer (shared/docs/house.md): the types and contracts that every other layer imports and
that import nothing of `methods/`, `tasks/` or `leaderboard/`."""
