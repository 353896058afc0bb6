module example.test/textcase

go 1.22
