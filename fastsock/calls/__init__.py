"""Call infrastructure outside the domain rules: TURN credentials and the coturn config."""
