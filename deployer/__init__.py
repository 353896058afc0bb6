"""deployer: build Go AWS Lambda functions as container images and deploy them declaratively."""

__version__ = "0.1.0"
