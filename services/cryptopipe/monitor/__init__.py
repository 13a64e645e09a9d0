"""The lake monitor: reads the candle lake and reports missing windows, stale products, price moves,
volume spikes and broken candle invariants, as a CLI report (`cryptopipe monitor report`) or as a
service exporting Prometheus metrics (`cryptopipe monitor serve`). See docs/lake-monitor.md.
"""
