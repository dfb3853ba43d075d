//! Blocking publish/subscribe: subscribe, flush (so the subscription is live
//! on every shard), publish ten messages, read them back.
//!
//! Usage: `cargo run -p flit-client --example pubsub [ADDRESS]` (default 127.0.0.1:4224).

use std::time::Duration;

use flit_client::{Client, ClientError};

fn main() -> Result<(), ClientError> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4224".to_owned());
    let client = Client::connect(address.as_str())?;
    let welcome = client.welcome();
    println!("connected to {} (shard {} of {})", welcome.server_name, welcome.shard, welcome.shards);

    let subscription = client.subscribe("demo.greetings.*")?;
    client.flush()?;
    for index in 0..10 {
        client.publish_with(&format!("demo.greetings.{index}"), None, &[("index", &index.to_string())], b"hello")?;
    }
    client.flush()?;
    for _ in 0..10 {
        match subscription.next_timeout(Duration::from_secs(2))? {
            Some(message) => println!(
                "{} index={} {:?}",
                message.subject,
                message.header("index").unwrap_or("?"),
                String::from_utf8_lossy(&message.payload)
            ),
            None => {
                println!("timed out waiting for a message");
                break;
            }
        }
    }
    client.close()
}
