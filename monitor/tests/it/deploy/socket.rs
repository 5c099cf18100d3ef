//! The claim of docs/OPERATIONS.md: a `:ro` bind of the Docker socket does not make the
//! Docker API read-only (against the private dockerd).

use super::*;

#[test]
fn read_only_bind_of_the_docker_socket_still_lets_a_client_create_containers() {
    let docker = support::docker();
    let socket = docker
        .host
        .strip_prefix("unix://")
        .expect("the private dockerd listens on a Unix socket");
    let dir = support::tempdir();
    let target = dir.path().join("ro-docker.sock");
    std::fs::File::create(&target).expect("mount point");
    let name = format!("ro-socket-proof-{}", std::process::id());
    docker.remove(&name);
    // In a private mount namespace: bind the socket read-only, show the mount flags, and
    // create a container through it (a POST /containers/create).
    let script = r#"set -e
mount --bind -o ro "$1" "$2"
grep -F " $2 " /proc/self/mountinfo
DOCKER_HOST="unix://$2" docker container create --name "$3" tb-test:latest true
"#;
    let out = Command::new(find_program("unshare", "TRUEBIT_TEST_UNSHARE"))
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            socket,
        ])
        .arg(&target)
        .arg(&name)
        .output()
        .expect("unshare runs (as root)");
    docker.remove(&name);
    assert!(
        out.status.success(),
        "creating a container through a read-only bind of the socket failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let said = stdout(&out);
    let mountinfo = said.lines().next().unwrap_or_default();
    let options = mountinfo.split_whitespace().nth(5).unwrap_or_default();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "the bind was not read-only: {mountinfo}"
    );
    let id = said.lines().nth(1).unwrap_or_default().trim();
    assert!(
        id.len() >= 12,
        "docker create printed no container id: {said}"
    );
}
