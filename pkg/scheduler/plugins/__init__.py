"""The scheduler's plugins, one module each, named as upstream's (the registry maps names to classes)."""
