Lucía ve grande casa Madrid .
Lucía ve grande libro Madrid .
Juan ve grande libro Sevilla .
Lucía ve grande casa Sevilla .
Juan ve grande casa Madrid .
