"""Strategies: the `Strategy` base class and its helpers (`base`), the built-in strategies
(`builtin`) and the read-only market views they are handed (`views`, and `history` for the
bars up to the current one)."""
