"""Stand-ins for the systems our components talk to, run as real servers in tests."""
