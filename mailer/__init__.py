"""The engine behind the ``campaign`` command.

One module per stage: content -> render -> personalise -> message -> schedule -> deliver,
with the ledger in :mod:`mailer.store`. The engine never prints and never exits; it raises
the exceptions of :mod:`mailer.errors`, which the CLI turns into messages.
"""
