"""One node per module; each is an async function of (state, runtime)."""
