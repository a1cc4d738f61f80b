"""`llmconsole bench`: measure an engine on the operator's own GPUs (see console/bench/cli.py).

Modules, one job each:

- ``http``: a small keep-alive HTTP/1.1 client on asyncio streams that streams response bodies;
- ``request``: one streamed completion or chat completion, timed (TTFT, ITL, latency, usage);
- ``workload``: the prompts, generated offline (random, prefix-repetition, long-prompt, a JSONL file);
- ``load``: the load shapes (fixed concurrency, Poisson/gamma rate) inside hard bounds;
- ``stats``: per-run aggregates and percentiles, with ``vllm bench serve``'s key names;
- ``slo``: SLO parsing, checking and the goodput search;
- ``enginewatch``: the engine's own /metrics deltas over a run (the project's parser and adapters);
- ``target``: an engine URL or ``HOST/ENGINE`` of the fleet, resolved to an OpenAI-compatible base URL;
- ``result``: the ``llmconsole.bench/1`` JSON document, reading it back, tables and ``--compare``;
- ``progress``: live progress on stderr;
- ``cli``: the verb.
"""
