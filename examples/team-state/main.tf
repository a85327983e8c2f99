# A small root module kept in the shared PostgreSQL state of backend.tf: a report of the
# service's readiness, safe to plan and apply from any number of CI jobs at once (the state lock
# makes them take turns). See README.md.

terraform {
  required_version = ">= 1.11"
  required_providers {
    artifortress = {
      source = "artifortress/artifortress"
    }
  }
}

variable "api_url" {
  description = "The API to report on. Default: the provider's api_url (ARTIFORTRESS_API_URL)."
  type        = string
  default     = null
}

provider "artifortress" {
  environment = "staging"
}

# Report only: no require_status, so an unreachable or degraded API never fails the run.
data "artifortress_readiness" "api" {
  url = var.api_url
}

output "api_status" {
  description = "`ready`, `degraded`, `not_ready` or `unreachable`."
  value       = data.artifortress_readiness.api.status
}
