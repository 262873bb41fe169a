"""Everything that opens a connection or starts a process lives here, and only here."""
