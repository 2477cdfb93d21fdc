"""The domain over the queue and the record: what the HTTP edge and the workers call."""
