"""CryptoPipeline: Coinbase trades -> Kafka -> Spark -> exactly-once OHLC candles in a Parquet lake."""

__version__ = "0.1.0"
