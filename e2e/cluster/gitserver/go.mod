module ferry.local/gitserver

go 1.24.0
