//! `truebit-monitor alert …`: the alert actions from the command line.

use anyhow::Context as _;
use clap::Subcommand;

use super::channel::Sender;
use super::handle::channels_in_effect;
use super::outbox;
use crate::config::Config;
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum AlertCommand {
    /// Send a test message to a channel now (one of the configuration's, named after its
    /// kind, or one defined in the dashboard) and say whether the service accepted it.
    Test {
        /// The channel's name.
        #[arg(value_name = "CHANNEL")]
        channel: String,
    },
}

/// Runs `command` with the channels of `config` and those stored in `store`.
pub fn run(command: AlertCommand, config: &Config, store: Store) -> anyhow::Result<()> {
    let AlertCommand::Test { channel } = command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let channels: Vec<_> = channels_in_effect(&store, &config.alert)
            .await?
            .into_iter()
            .map(|d| d.channel)
            .collect();
        store.close()?;
        let found = outbox::find(channels.iter(), &channel)?;
        let sender = Sender::new(config.alert.delivery.timeout)?;
        outbox::send_test(&sender, found, config.http.public_url.as_deref()).await?;
        println!("test message sent to {channel} ({})", found.kind().as_str());
        Ok(())
    })
}
