//! Async publish/subscribe on tokio: a subscriber task reads what the main
//! task publishes.
//!
//! Usage: `cargo run -p flit-client --example async_pubsub [ADDRESS]` (default 127.0.0.1:4224).

use std::time::Duration;

use flit_client::{AsyncClient, ClientError};

const MESSAGES: usize = 10;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4224".to_owned());
    let client = AsyncClient::connect(address.as_str()).await?;
    println!("connected to shard {} of {}", client.welcome().shard, client.welcome().shards);

    let mut subscription = client.subscribe("demo.async.>").await?;
    client.flush().await?;
    let reader = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            match subscription.next_timeout(Duration::from_secs(2)).await {
                Ok(Some(message)) => println!("{}: {}", message.subject, String::from_utf8_lossy(&message.payload)),
                Ok(None) => return println!("timed out waiting for a message"),
                Err(error) => return println!("subscription ended: {error}"),
            }
        }
    });
    for index in 0..MESSAGES {
        client.publish(&format!("demo.async.{index}"), format!("message {index}").as_bytes()).await?;
    }
    client.flush().await?;
    let _ = reader.await;
    client.close().await
}
