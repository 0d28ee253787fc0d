"""Migration tools: ``verify`` (is every record in the stream, once, in order, intact?) with the
projection of a record into the stream (``projection``) and the per-partition comparison and report
(``compare``); ``translate`` (a consumer group's committed offsets → stream sequences).
"""
