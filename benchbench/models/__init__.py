"""Model builders per framework. Only backends import these modules."""
