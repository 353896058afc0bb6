module example.com/shared/errors

go 1.22
