"""What the server supports: one table read by the routes and the CapabilityStatement."""
