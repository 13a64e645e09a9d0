"""The Spark Structured Streaming job: Kafka trades -> exactly-once OHLC candles in the lake."""
