"""Authentication: access tokens (JWT), their grants, and who a request comes from."""
