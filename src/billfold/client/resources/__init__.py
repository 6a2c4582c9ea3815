"""The API's resources, one module per area; the clients in `billfold.client` hold them."""
