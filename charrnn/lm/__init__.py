"""The language model: head, truncated-BPTT training task, sampling, scoring."""
