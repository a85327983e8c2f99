provider "artifortress" {
  environment     = "staging"
  api_url         = "http://127.0.0.1:8086" # or ARTIFORTRESS_API_URL
  admin_token     = var.admin_token         # or ARTIFORTRESS_ADMIN_TOKEN
  bootstrap_token = var.bootstrap_token     # or ARTIFORTRESS_BOOTSTRAP_TOKEN
  database_url    = var.database_url        # or ARTIFORTRESS_DATABASE_URL

  object_storage = {
    endpoint          = "http://127.0.0.1:3900" # or ARTIFORTRESS_S3_ENDPOINT
    region            = "us-east-1"
    bucket            = "artifortress-staging"   # or ARTIFORTRESS_S3_BUCKET
    access_key_id     = var.s3_access_key_id     # or AWS_ACCESS_KEY_ID
    secret_access_key = var.s3_secret_access_key # or AWS_SECRET_ACCESS_KEY
    force_path_style  = true
  }

  # Deploy hosts of artifortress_release (transport "ssh").
  ssh = {
    user                     = "deploy"                           # or ARTIFORTRESS_SSH_USER; default $USER
    private_key              = var.ssh_private_key                # or ARTIFORTRESS_SSH_PRIVATE_KEY; unset: SSH agent
    known_hosts              = file("${path.module}/known_hosts") # or ARTIFORTRESS_SSH_KNOWN_HOSTS; default ~/.ssh/known_hosts
    insecure_ignore_host_key = false
    connect_timeout          = "30s"
  }

  request_timeout = "30s"
}

variable "admin_token" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "bootstrap_token" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "database_url" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "s3_access_key_id" {
  type = string
}

variable "s3_secret_access_key" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "ssh_private_key" {
  type      = string
  sensitive = true
  ephemeral = true
}
