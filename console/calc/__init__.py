"""The calculators: VRAM sizing and self-host break-even (pure math, no Textual).

Modules, each with one job:

* :mod:`.hfconfig` reads a Hugging Face ``config.json`` into a :class:`.models.ModelSpec`
  (parameter counts, layers, KV heads, windows); the model catalog uses the same path.
* :mod:`.catalog` loads the model, GPU and API catalogs (``data/*.json``, each entry with its source and
  date) and resolves names with closest-match suggestions.
* :mod:`.quant` turns parameters into weight bytes per format; :mod:`.kv` is the KV-cache math;
  :mod:`.vram` combines them into a fit verdict (rule-of-thumb and vLLM-style overhead modes).
* :mod:`.capacity` estimates the tokens/day a deployment can serve; :mod:`.breakeven` compares
  self-hosting with API prices; :mod:`.live` prices a running engine.
* :mod:`.settings` validates ``[calculator]`` in ``config.toml``; :mod:`.cli` is ``llmconsole calc``, printing
  through :mod:`.report` (JSON dicts, text tables).
* :mod:`.present` turns the screen's form into view data (toned text, bars, chart lines) and :mod:`.presets`
  holds the worked example (70B on one A100) and "size a running engine"; console/screens/calc.py only shows them.

Nothing here imports Textual (a test proves it).

Units: bytes are exact integers; "GB" means 1e9 bytes and "GiB" 2**30 bytes, and every figure says which.
"""
