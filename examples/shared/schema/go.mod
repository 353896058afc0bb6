module example.com/shared/schema

go 1.22

require example.com/shared/errors v0.0.0

replace example.com/shared/errors => ../errors
