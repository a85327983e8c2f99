# The object storage bucket of one environment.
#
# In real life this module creates the bucket (`aws_s3_bucket` with versioning, encryption and a
# lifecycle rule for old backups, or the equivalent for MinIO, Garage, Ceph...). This stand-in
# only passes the bucket's coordinates through, with the outputs such a module would have, so the
# examples run offline; `artifortress_bootstrap` with `create_bucket = true` then verifies the
# bucket (put/get/delete probe) and creates it when it does not exist yet.

terraform {
  required_version = ">= 1.11"
}

variable "name" {
  description = "Bucket name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.name))
    error_message = "A bucket name is 3 to 63 lower-case letters, digits, dots and hyphens."
  }
}

variable "endpoint" {
  description = "S3 endpoint URL (e.g. https://s3.eu-west-1.amazonaws.com, or a MinIO / Garage URL)."
  type        = string

  validation {
    condition     = can(regex("^https?://", var.endpoint))
    error_message = "endpoint must be an http:// or https:// URL."
  }
}

variable "region" {
  description = "S3 region."
  type        = string
  default     = "us-east-1"
}

output "name" {
  description = "The bucket's name."
  value       = var.name
}

output "endpoint" {
  description = "The S3 endpoint URL."
  value       = var.endpoint
}

output "region" {
  description = "The S3 region."
  value       = var.region
}
