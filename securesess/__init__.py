"""securesess: mutually authenticated, encrypted channels and confined sessions on Trio."""

__all__: list[str] = []
