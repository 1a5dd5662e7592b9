"""The caps every reader of outside data applies before it allocates.

Database folders, model files and worker messages may come from someone
else, so each reader refuses, with an error naming the cap, anything that
would make it allocate more than these. The defaults are far above what
this library writes; change one by assigning to it before reading, e.g.
``amp.store.limits.MAX_ENTRY_BYTES = 4 * 2**30``. Readers look the values
up at each call, so an assignment takes effect at once.
"""

#: Bytes of one database entry (a loose file or an archive member).
MAX_ENTRY_BYTES = 2 ** 30

#: Bytes of ``archive.tar.gz`` once inflated (and of the file itself).
MAX_ARCHIVE_BYTES = 64 * 2 ** 30

#: Bytes of a ``.amp`` model file or a database's ``parameters.json``.
MAX_MODEL_FILE_BYTES = 2 ** 30

#: Nesting depth of lists, dicts and calls in a model file.
MAX_NESTING_DEPTH = 100

#: Characters of one string in a model file.
MAX_STRING_CHARS = 2 ** 28

#: Bytes of one array a model file asks for (element count x item size).
MAX_ARRAY_BYTES = 2 ** 30

#: Bytes of one message between a master and its workers once they have
#: authenticated (``WorkerPool(max_message_bytes=...)`` overrides it per
#: pool). Before authentication no message is taken at all, and no frame
#: may exceed :data:`amp.parallel.wire.MAX_FRAME_BYTES`.
MAX_MESSAGE_BYTES = 4 * 2 ** 30
