module example.com/shared/s3state

go 1.22

require (
	example.com/shared/errors v0.0.0
	example.com/shared/logger v0.0.0
)

replace example.com/shared/errors => ../errors

replace example.com/shared/logger => ../logger
