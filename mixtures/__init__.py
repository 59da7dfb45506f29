"""SQL views and balance queries over the catalog, mixture recipes and exports."""
