"""One node per module; each is an async function of (state, runtime) that reaches storage
and models only through ``graph.ports`` (found in ``runtime.context.services``)."""
