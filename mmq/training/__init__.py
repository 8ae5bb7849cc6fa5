"""`mmq train`: fit an alignment head on image–caption pairs with the towers frozen."""
