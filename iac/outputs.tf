output "container_name" {
  value = docker_container.maestro.name
}

output "urls" {
  value = [for p in var.ports : "http://localhost:${p}/"]
}

output "list_services" {
  value = "docker exec ${docker_container.maestro.name} list-services"
}
