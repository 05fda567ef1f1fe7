DROP TABLE relay_users;
