module example.com/shared/logger

go 1.22
