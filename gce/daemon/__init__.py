"""The endpoint manager: broker connection, spool, user endpoints, control socket."""
