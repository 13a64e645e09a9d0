"""The developer harness around the product: the `cryptopipe` CLI, the local stack, the Coinbase replay
server, the benchmarks and the dev cluster. Installed by the ``dev`` extra; never shipped in an image.

It may import everything (the product packages ``cryptopipe``, ``candles_job`` and
``cryptopipe_operator``); nothing in those may import it (import-linter contracts in pyproject.toml).
"""
