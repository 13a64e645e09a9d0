"""`python -m cryptopipe_dev.bench` (`make bench`): one run that measures, side by side,

1. ingestion throughput: the service's hot path (FrameHandler -> RecordProducer) against the bare
   kafka-python producer sending the same records, into a real local broker (throughput.py);
2. candle latency at real speed: the whole local stack on a synthetic feed, from window end to the
   candle's Parquet file being visible in the lake (latency.py);
3. memory: total RSS of every process the stack started, sampled while 2 runs (procmem.py).

A benchmark, not a test: nothing here asserts a timing. Results go to stdout (report.py).
"""
