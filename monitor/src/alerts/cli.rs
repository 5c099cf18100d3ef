//! `truebit-monitor alert …`: the alert actions from the command line.

use anyhow::Context as _;
use clap::Subcommand;

use super::channel::Sender;
use super::outbox;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum AlertCommand {
    /// Send a test message to a configured channel now (webhook, telegram, discord,
    /// slack, ntfy or email) and say whether the service accepted it.
    Test {
        /// The channel's name.
        #[arg(value_name = "CHANNEL")]
        channel: String,
    },
}

pub fn run(command: AlertCommand, config: &Config) -> anyhow::Result<()> {
    let AlertCommand::Test { channel } = command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let found = outbox::find(config.alert.channels.iter(), &channel)?;
        let sender = Sender::new(config.alert.delivery.timeout)?;
        outbox::send_test(&sender, found, config.http.public_url.as_deref()).await?;
        println!("test message sent to {channel} ({})", found.kind().as_str());
        Ok(())
    })
}
