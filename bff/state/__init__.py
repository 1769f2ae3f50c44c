"""Login and viewing state shared by the BFF's replicas (issue 15, item 1).

- :mod:`bff.state.backend`: the one store interface (:class:`StateBackend`) of
  sessions, pending logins and Consumer hand-overs, and its in-memory implementation
  (the demo's and the unit tests' default, one process);
- :mod:`bff.state.sql`: the SQL implementation (SQLAlchemy Core; PostgreSQL in
  production, SQLite for tests), shared by every replica;
- :mod:`bff.state.sealing`: AES-GCM of every stored payload, bound to its row.

The stores that give the entries their meaning (expiry, bounds, single use) are in
:mod:`bff.auth.sessions`, :mod:`bff.auth.pending` and :mod:`bff.access.handover`; they
call this interface only and never ask which implementation answers.
"""
