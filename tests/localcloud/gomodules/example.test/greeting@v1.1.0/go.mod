module example.test/greeting

go 1.22

require example.test/textcase v1.2.0
