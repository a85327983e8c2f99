# The deploy hosts of one environment, in the shape `artifortress_release.hosts` takes.
#
# In real life this is where the machines are made: an EC2 / VM / bare-metal module that creates
# the instances and outputs their private addresses. This stand-in takes the addresses as input
# (so the examples run offline, against the dev environment's SSH hosts) and has the outputs such
# a module would have: every host with its SSH address, port and roles, and the API URL of each
# API host, ready to feed `artifortress_release.hosts` and readiness probes.

terraform {
  required_version = ">= 1.11"
}

variable "hosts" {
  description = "Hosts by name: address (what SSH connects to and the API listens on), SSH port, role (`api` or `worker`)."
  type = map(object({
    address = string
    port    = optional(number, 22)
    role    = string
  }))

  validation {
    condition     = alltrue([for h in values(var.hosts) : contains(["api", "worker"], h.role)])
    error_message = "Every host's role must be \"api\" or \"worker\"."
  }
  validation {
    condition     = length([for h in values(var.hosts) : h if h.role == "api"]) > 0
    error_message = "At least one host must have the role \"api\"."
  }
}

variable "api_port" {
  description = "The port every API host listens on."
  type        = number
  default     = 8086
}

variable "api_scheme" {
  description = "`http` or `https` (a TLS-terminating proxy on each host)."
  type        = string
  default     = "http"

  validation {
    condition     = contains(["http", "https"], var.api_scheme)
    error_message = "api_scheme must be \"http\" or \"https\"."
  }
}

locals {
  hosts = {
    for name, h in var.hosts : name => {
      address = h.address
      port    = h.port
      roles   = [h.role]
      api_url = h.role == "api" ? "${var.api_scheme}://${h.address}:${var.api_port}" : null
    }
  }
}

output "hosts" {
  description = "name => { address, port, roles, api_url } for `artifortress_release.hosts` (api_url is null on worker hosts)."
  value       = local.hosts
}

output "api_urls" {
  description = "name => API base URL, for the API hosts only."
  value       = { for name, h in local.hosts : name => h.api_url if h.api_url != null }
}
