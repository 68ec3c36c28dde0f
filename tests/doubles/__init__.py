"""Test doubles: stand-ins for services outside the server (a payment processor), run
by the tests as separate threads or processes and spoken to over real HTTP."""
