module example.test/greeting

go 1.22
