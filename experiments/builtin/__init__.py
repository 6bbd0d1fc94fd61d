"""Built-in experiments (registered when the registry is first read)."""
