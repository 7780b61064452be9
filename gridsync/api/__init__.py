"""HTTP controllers: they translate between HTTP and domain calls, and never write SQL."""
