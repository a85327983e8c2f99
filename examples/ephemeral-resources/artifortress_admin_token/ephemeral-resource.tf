# The default provider mints with its bootstrap_token (or ARTIFORTRESS_BOOTSTRAP_TOKEN).
provider "artifortress" {}

# A token for this run only: minted when Terraform opens it, revoked when the run ends.
ephemeral "artifortress_admin_token" "ci" {
  subject     = "ci-drift-check" # recorded on the token and in the audit log
  scopes      = ["repo:*:admin"]
  ttl_minutes = 15 # bounds a run that is killed before it can revoke
}

# Data sources read with their provider's admin_token: hand the minted token to an aliased
# provider block and read through it.
provider "artifortress" {
  alias       = "minted"
  admin_token = ephemeral.artifortress_admin_token.ci.token
}

data "artifortress_ops_summary" "now" {
  provider = artifortress.minted
}
