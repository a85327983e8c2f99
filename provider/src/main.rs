//! The provider binary: `terraform` starts it; run by hand it explains itself.

use std::process::ExitCode;

use artifortress_provider::protocol::{logging, serve};
use artifortress_provider::provider::ArtifortressProvider;
use artifortress_provider::{PROVIDER_ADDRESS, VERSION};

const USAGE: &str =
    "terraform-provider-artifortress: the Terraform / OpenTofu provider for Artifortress.

Terraform starts this binary itself. Options for people:
  --version   print the version
  --debug     serve without Terraform starting it, and print the TF_REATTACH_PROVIDERS value
              that makes terraform use this process (for debuggers and tests)
  --help      this text";

fn main() -> ExitCode {
    let mut debug = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--version" | "-v" | "version" => {
                println!("terraform-provider-artifortress v{VERSION}");
                return ExitCode::SUCCESS;
            }
            "--debug" => debug = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    logging::init();
    tracing::info!(
        version = VERSION,
        "terraform-provider-artifortress starting"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("terraform-provider-artifortress: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = serve::ServeOptions {
        address: PROVIDER_ADDRESS,
        debug,
    };
    match runtime.block_on(serve::serve(ArtifortressProvider, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
